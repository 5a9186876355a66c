// 医院信息: the directory and the hospital's public content (ADM-2..6, OUT-1 rules, PUB-1..6, OUT-14 tests).
const G = '医院信息'
const page = (name) => () => import(`../pages/content/${name}.vue`)

export default [
  { path: '/content/departments', name: 'departments', component: page('DepartmentsPage'), meta: { title: '科室管理', menu: { group: G, order: 10 } } },
  { path: '/content/doctors', name: 'doctors', component: page('DoctorsPage'), meta: { title: '医生管理', menu: { group: G, order: 11 } } },
  { path: '/content/hospital', name: 'hospital', component: page('HospitalPage'), meta: { title: '医院介绍与院区', menu: { group: G, order: 12 } } },
  { path: '/content/announcements', name: 'announcements', component: page('AnnouncementsPage'), meta: { title: '公告管理', menu: { group: G, order: 13 } } },
  { path: '/content/news', name: 'news', component: page('NewsPage'), meta: { title: '新闻资讯', menu: { group: G, order: 14 } } },
  { path: '/content/guide', name: 'guide', component: page('GuidePage'), meta: { title: '就医指南', menu: { group: G, order: 15 } } },
  { path: '/content/prices', name: 'prices', component: page('PricesPage'), meta: { title: '价格公示', menu: { group: G, order: 16 } } },
  { path: '/content/triage', name: 'triage', component: page('TriagePage'), meta: { title: '智能导诊规则', menu: { group: G, order: 17 } } },
  { path: '/content/tests', name: 'tests', component: page('TestsPage'), meta: { title: '自助开单项目', menu: { group: G, order: 18 } } },
]
