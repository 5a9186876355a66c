// The Element Plus components the staff pages use, each with only its own stylesheet; zh-CN texts.
// A page that needs a component not listed here imports it (and its style) itself, or adds it here
// when several pages share it.
import {
  ElAlert, ElAside, ElButton, ElCard, ElConfigProvider, ElContainer, ElEmpty, ElForm, ElFormItem, ElHeader, ElInput,
  ElMain, ElMenu, ElMenuItem, ElMenuItemGroup, ElResult, ElTable, ElTableColumn, ElTag,
} from 'element-plus'
import 'element-plus/es/components/alert/style/css'
import 'element-plus/es/components/aside/style/css'
import 'element-plus/es/components/button/style/css'
import 'element-plus/es/components/card/style/css'
import 'element-plus/es/components/config-provider/style/css'
import 'element-plus/es/components/container/style/css'
import 'element-plus/es/components/empty/style/css'
import 'element-plus/es/components/form/style/css'
import 'element-plus/es/components/form-item/style/css'
import 'element-plus/es/components/header/style/css'
import 'element-plus/es/components/input/style/css'
import 'element-plus/es/components/main/style/css'
import 'element-plus/es/components/menu/style/css'
import 'element-plus/es/components/menu-item/style/css'
import 'element-plus/es/components/menu-item-group/style/css'
import 'element-plus/es/components/result/style/css'
import 'element-plus/es/components/table/style/css'
import 'element-plus/es/components/table-column/style/css'
import 'element-plus/es/components/tag/style/css'
// function-style components (ElMessage, ElMessageBox) need their styles imported by hand
import 'element-plus/es/components/message/style/css'
import 'element-plus/es/components/message-box/style/css'

export { default as zhCn } from 'element-plus/es/locale/lang/zh-cn'

const components = [
  ElAlert, ElAside, ElButton, ElCard, ElConfigProvider, ElContainer, ElEmpty, ElForm, ElFormItem, ElHeader, ElInput,
  ElMain, ElMenu, ElMenuItem, ElMenuItemGroup, ElResult, ElTable, ElTableColumn, ElTag,
]

export default {
  install(app) {
    for (const component of components) app.use(component)
  },
}
